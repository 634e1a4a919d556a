"""Head-to-head comparison: native ICWM vs adapted LLMs vs single-task nets vs classical baselines.

``icwm.compare.run.run(CompareConfig, argv)`` writes results.csv, report.md, plots, config.yaml and provenance.json.
"""
