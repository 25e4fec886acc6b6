"""Development tools of the 3D scene server, shared by the tests, the benches and ``scripts/``.

- :mod:`scene_dev.run_plan`, :mod:`scene_dev.supervisor`, :mod:`scene_dev.run`: ``make run``
  (the processes of one stack, their supervision, the command line).
- :mod:`scene_dev.tiny_models`, :mod:`scene_dev.full_size_models`: random-weight models of the
  real architectures (tiny for tests, full size for benchmarks).
- :mod:`scene_dev.fakes`: the fake OpenAI Images API and fake model services.
- :mod:`scene_dev.pcld_chromium`, :mod:`scene_dev.panorama_oracle`: helpers a test and a bench
  both use.

Installed editable by ``make install``, never into an image: ``scene_dev.paths`` points into
the checkout.
"""
