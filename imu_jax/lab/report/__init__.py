"""Reports of an experiment, drawn from its stored results: tables (:mod:`.tables`), the paired
comparison with IMU (:mod:`.comparison`), matched forgetting (:mod:`.matched`) and figures
(:mod:`.plots`, on demand)."""

from imu_jax.lab.report.comparison import comparison_table
from imu_jax.lab.report.matched import (best_at_forgetting, matched_forgetting, retrain_ua,
                                        sweep_points)
from imu_jax.lab.report.plots import pareto_front, plot_curve, trace_plot, tradeoff_plot
from imu_jax.lab.report.runs import (REPORTED_ROLES, commands_of, is_sequence, mean_interval,
                                     paired_difference, reported_runs, row_label, sample_std,
                                     summarize,
                                     t_quantile_975)
from imu_jax.lab.report.tables import (CLASSIFICATION_COLUMNS, MIA_COLUMNS, PERCENT_KEYS,
                                       SEQUENCE_COLUMNS, bn_mode_text, combined_markdown,
                                       format_cell, grid_text, held_out_text,
                                       results_markdown, retain_free_check, retain_free_table,
                                       stop_text, table)


__all__ = ["CLASSIFICATION_COLUMNS", "MIA_COLUMNS", "PERCENT_KEYS", "REPORTED_ROLES",
           "SEQUENCE_COLUMNS", "best_at_forgetting", "bn_mode_text", "combined_markdown",
           "commands_of", "comparison_table", "format_cell", "grid_text", "held_out_text",
           "is_sequence", "matched_forgetting", "mean_interval", "paired_difference",
           "pareto_front", "plot_curve",
           "reported_runs", "results_markdown", "retain_free_check", "retain_free_table",
           "retrain_ua", "row_label", "sample_std", "stop_text", "summarize", "sweep_points",
           "t_quantile_975", "table", "trace_plot", "tradeoff_plot"]
