schedule = torch.profiler.schedule(wait=1, warmup=2, active=5)
with torch.profiler.profile(schedule=schedule,
                            on_trace_ready=lambda p: p.export_chrome_trace("trace.json")) as prof:
    for batch in loader:
        train_step(batch)
        prof.step()  # ProfilerStep#N around each iteration
