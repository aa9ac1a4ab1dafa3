"""Gradient compression for robust aggregation: sparsifiers with a name registry, the sparse
row a worker sends, error feedback kept on the server, and the server's side of a compressed
round (docs/compression.md)."""
from .base import (Compressor, available_compressors, compressor, compressor_classes, k_of,
                   mask_seed, random_mask, register_compressor)
from .row import SparseRow, check_message, index_dtype
from .none import NoCompression
from .topk import TopK
from .approx_topk import ApproxTopK
from .randk_shared import RandKShared
from .topk_shared import TopKShared
from .memory import FeedbackMemory
from .receiver import Receiver, stateless

__all__ = ["ApproxTopK", "Compressor", "FeedbackMemory", "NoCompression", "RandKShared",
           "Receiver", "SparseRow", "TopK", "TopKShared", "available_compressors",
           "check_message", "compressor", "compressor_classes", "index_dtype", "k_of",
           "mask_seed", "random_mask", "register_compressor", "stateless"]
