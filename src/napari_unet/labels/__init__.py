"""Labels in and out: what the user asks of labels (`options`), probabilities decoded
into labels (`decode`), the boundary-aware training targets of instance labels
(`targets`) and the quality of labels against a truth (`metrics`).
"""
