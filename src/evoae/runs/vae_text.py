"""A final VAE's figures (``summary.json``'s ``final["vae"]``) as text, without torch.

``evoae search``, ``evoae runs show`` and the HTML report show the same rows; every
likelihood figure names how the pixels were modelled ("dynamically binarised" or
continuous), since the two are not comparable.
"""

from __future__ import annotations

from typing import Any


def protocol_label(binarize: str) -> str:
    """How the pixels were modelled, shown beside every likelihood figure."""
    if binarize == "dynamic":
        return "dynamically binarised"
    return "continuous pixels, not comparable with binarised-MNIST papers"


def summary_rows(vae: Any) -> list[tuple[str, str]]:
    """``final["vae"]`` as (label, text) rows; none for a summary without it (not a
    VAE, or a run made before these figures)."""
    if not isinstance(vae, dict):
        return []
    how = protocol_label(str(vae.get("binarize", "none")))
    k = vae.get("nll_samples") or 0
    nll, elbo = vae.get("test_nll"), vae.get("test_neg_elbo")
    return [
        (
            "active latent units",
            f"{vae.get('active_units')} of {vae.get('code_size')} (posterior-mean variance "
            f"> {vae.get('active_threshold', 0.01)} on the {vae.get('health_split', 'test')} "
            "split)",
        ),
        (
            "posterior collapse",
            f"COLLAPSED: {vae.get('collapse_reason')}" if vae.get("collapsed") else "no",
        ),
        ("test neg-ELBO", "-" if elbo is None else f"{elbo:.2f} nats ({how})"),
        (
            f"test NLL (IWAE, k={k})" if k else "test NLL",
            f"{nll:.2f} nats ({how})" if nll is not None else "off (--nll-samples 0)",
        ),
    ]


def collapse_text(vae: Any) -> str | None:
    """A collapsed VAE (``final["vae"]["collapsed"]``) in one plain sentence; else None."""
    if not isinstance(vae, dict) or not vae.get("collapsed"):
        return None
    return (
        f"Posterior collapse: {vae.get('collapse_reason') or 'the code is unused'}, so the "
        "decoder ignores the code and its samples and interpolations are (nearly) all the "
        "same image."
    )
