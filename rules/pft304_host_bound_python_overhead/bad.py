def rnn_step(x, h, w_x, w_h, b):
    for t in range(x.shape[1]):  # hundreds of tiny ops per step, each paying dispatch
        h = torch.tanh(x[:, t] @ w_x + h @ w_h + b)
    return h
