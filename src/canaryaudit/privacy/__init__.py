"""What a model's outputs reveal about its training data: :mod:`.membership` (membership-inference
evaluation: AUC, TPR at low FPR, ROC), :mod:`.empirical_epsilon` (the one-run lower bound on epsilon of
Steinke, Nasr and Jagielski, 2023) and :mod:`.pii_attack` (PII reconstruction and inference, Lukas et al.
2023)."""
