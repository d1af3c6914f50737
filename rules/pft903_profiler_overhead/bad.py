with torch.profiler.profile(with_stack=True, profile_memory=True, record_shapes=True) as prof:
    for batch in loader:  # every Python call and allocation recorded
        train_step(batch)
        prof.step()
