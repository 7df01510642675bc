r"""Loss terms as a library, by family; a method file only composes terms from here.

Each module states the equation of every term and a hand-checked case (its test in ``tests/test_losses*.py``
uses that case). Families:

* :mod:`.robust` -- robust losses of a probability (RSHNL's GCE/MAE blend ``l_r``, GCE, MAE, ...).
* :mod:`.contrastive` -- InfoNCE-style cross-modal contrast (RSHNL's ``L_C`` in paper and published form,
  SEHA/UCCH-style InfoNCE, ...).
* :mod:`.proxy` -- class-centre / proxy losses (RSHNL's centre aggregation ``L_p``, ...).
* :mod:`.selfpaced` -- self-paced weights and regularisers.
* :mod:`.selection` -- sample selection (two-component GMM clean probability, small-loss selection, ...).
* :mod:`.similarity` -- similarity-preserving losses and label similarities.
* :mod:`.quantization` -- quantisation / binarisation terms.
* :mod:`.classification` -- per-sample classification losses.

The RSHNL names are re-exported here (``cmhash.losses.robust_loss`` etc.) for existing callers.
"""

from .contrastive import contrastive_hash_loss, contrastive_hash_probability, cross_modal_info_nce
from .proxy import center_aggregation_per_pair, center_probabilities
from .robust import robust_loss, robust_loss_max
from .selfpaced import self_paced_regulariser, self_paced_weights

__all__ = [
    "center_aggregation_per_pair",
    "center_probabilities",
    "contrastive_hash_loss",
    "contrastive_hash_probability",
    "cross_modal_info_nce",
    "robust_loss",
    "robust_loss_max",
    "self_paced_regulariser",
    "self_paced_weights",
]
