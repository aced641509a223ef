"""Progress bars for every training loop (the autoencoder, the prior, the router, the head)."""


def progress_bar(iterable, **kwargs):
    """tqdm.auto: a widget in notebooks, a text bar in terminals."""
    from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)
