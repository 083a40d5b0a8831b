"""What a model's outputs reveal about membership: :mod:`.membership` (membership-inference evaluation:
AUC, TPR at low FPR, ROC) and :mod:`.empirical_epsilon` (the one-run lower bound on epsilon of Steinke,
Nasr and Jagielski, 2023)."""
