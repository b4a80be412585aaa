"""Embedding models: CLIP (open_clip, hub weights) and the offline concept embedder (packaged weights)."""
