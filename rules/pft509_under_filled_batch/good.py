loader = DataLoader(dataset, batch_size=256, shuffle=True)  # fills the GPU; lr scaled with it
