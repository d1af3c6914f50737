torch.set_num_threads(len(os.sched_getaffinity(0)))  # every core this process may use
