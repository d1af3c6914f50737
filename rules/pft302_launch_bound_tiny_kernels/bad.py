def update(params, grads, lr):
    for p, g in zip(params, grads):  # one 2 µs kernel per parameter, 6 µs to launch each
        p.add_(g, alpha=-lr)
