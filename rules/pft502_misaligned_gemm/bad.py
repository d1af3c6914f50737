def lm_head(h, weight):
    return F.linear(h, weight)  # weight: [50257, 768] — N = 50257
