"""The synthetic world's build pipeline (``prm-plugin world build``): the policy's SFT
(``sft``), Monte-Carlo PRM labels (``labels``), the PRM's training and the figures
(``build``, ``figures``, ``report``). The runtime half of the world (generator,
grading, tokenizer, shipped assets) is ``prm_plugin.world``."""
