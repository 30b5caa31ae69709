"""Evaluation: the DAVIS 2017 J&F metric (official-equivalent), the scorer, and the video runner."""

from isvos_lite.eval.scorer import ScoreResult, per_frame_scores, score_results  # noqa: F401
