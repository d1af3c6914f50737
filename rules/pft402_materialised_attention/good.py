def attention(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)  # flash / memory-efficient kernel
