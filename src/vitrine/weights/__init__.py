"""Pretrained weights: what they are (:mod:`~vitrine.weights.spec`) and where they are found
(:mod:`~vitrine.weights.resolve`: one lookup order for every model).

``local`` (``--weights PATH`` / ``VITRINE_WEIGHTS_<NAME>``), ``hf`` (the Hugging Face cache and
hub), ``torch_hub`` (the torch hub cache and downloads into it) and ``network`` (offline mode and
the one reachability probe) are the sources the lookup walks through. This layer imports nothing
of vitrine but its errors.
"""
