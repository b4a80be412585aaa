"""The bottom layer every other one may use: errors (:mod:`vitrine.core.errors`), the one atomic
writer (:mod:`vitrine.core.atomic`) and the workspace's folder layout (:mod:`vitrine.core.workspace`).
It imports nothing else of vitrine."""
