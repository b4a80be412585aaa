"""CPU runtimes: models exported to ONNX Runtime or OpenVINO, cached, checked and chosen by measurement.

torch stays the GPU path and the fallback; on a CPU the runtimes built for it are several times
faster (issue 14 measured 2.4-4.5x for a ViT-B/32 image tower). Nothing here knows a model:

* :mod:`~vitrine.runtime.cache`: where exported files live (one folder per key: weights hash, runtime,
  its version and the export options), built once and renamed into place atomically;
* :mod:`~vitrine.runtime.session`: one ``Session`` over ONNX Runtime or OpenVINO, with threads and the
  precision hint always set explicitly (a CPU with bf16 may otherwise run an fp32 model in bf16);
* :mod:`~vitrine.runtime.parity`: the gate a variant must pass against fp32 on real images
  (embeddings, class scores, detections);
* :mod:`~vitrine.runtime.choose`: measure the variants on the user's machine and images, keep the
  fastest that passes the gate and is faster than the reference, and remember the choice.

The modules that know a model (``models/embedders``, ``predict``) export it and hand the pieces here.
"""
