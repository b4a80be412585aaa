"""Evaluation shared by every classifier run: metrics, report files, inference speed."""

from vitrine.evaluate.classification import (
    classification_report,
    evaluate_run,
    measure_speed,
    write_report,
)

__all__ = ["classification_report", "evaluate_run", "measure_speed", "write_report"]
