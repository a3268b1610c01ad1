"""Samplers, schedulers, CFG and model sampling (torch).

Modules:
  model_sampling  noise schedules / prediction types (the model <-> sampler contract)
  schedulers      sigma schedules (KSampler's scheduler list and the custom-sampling ones)
  k_diffusion     the sampler algorithms, k-diffusion style ``sample_x(model, x, sigmas, ...)``
  noise           seeded initial noise, Brownian-tree / default noise samplers
  conditioning    conditioning -> model inputs (areas, masks, strengths, timestep ranges), CFG
  samplers        KSampler, guiders, sampler objects, the full sampling pipeline
  preview         latent2rgb step previews
"""
