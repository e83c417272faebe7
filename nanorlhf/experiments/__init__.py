"""Studies that rerun the pipeline and measure it: one command each, each writing a JSON and a
markdown table (`python -m nanorlhf.experiments.seeds`)."""
