"""Evaluation: the DAVIS 2017 J&F metric (official-equivalent), the scorer, the video runner, and the IS branch's
instance mask AP (``instance_ap``, pycocotools)."""

from isvos_lite.eval.scorer import ScoreResult, per_frame_scores, score_results  # noqa: F401
