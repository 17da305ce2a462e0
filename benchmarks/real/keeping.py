"""Fused chains that keep what the flows keep, for comparison only (not peers a user writes).

A Prefect-style flow keeps its futures until it returns (the ETL's `raw`; the image
pipeline's `images`, `smooth`, `edges`), so every intermediate stays readable, where a fused
chain frees each one. These keep them too, in the worker, so that a row on spawned workers
that keep what the flow keeps shows what procflow's semantics cost on any engine. Their
own module, importing the science lazily: a spawned worker imports only what its chain
needs, as it imports the flow's module for procflow.
"""

KEPT = []  # what this worker's chains made, until the pool ends


def extract_transform_keeping(part, products):
    import etl_core
    orders = etl_core.extract(part)
    KEPT.append(orders)
    return etl_core.transform(orders, products)


def process_one_keeping(seed):
    import images_core as core
    img = core.make_image(seed)
    smooth = core.denoise(img)
    edges = core.edge_map(smooth)
    KEPT.extend((img, smooth, edges))
    return core.features(smooth, edges)
