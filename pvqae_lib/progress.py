"""Progress bars for every training loop (the autoencoder, the prior, the router, the head)."""

from tqdm.auto import tqdm


def progress_bar(iterable, **kwargs):
    """tqdm.auto: a widget in notebooks, a text bar in terminals."""
    return tqdm(iterable, **kwargs)
