"""An lm-eval task folder (YAML + utils); a package so it installs under prm_plugin.task_configs."""
