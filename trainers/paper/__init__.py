"""The paper's experiments (arXiv 2506.00027) reproduced on the synthetic world:
``prm-plugin reproduce {transfer,budgets}``."""
