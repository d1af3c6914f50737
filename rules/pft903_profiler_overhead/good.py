with torch.profiler.profile(record_shapes=True) as prof:  # or: perftune profile --detail light
    for batch in loader:
        train_step(batch)
        prof.step()
