"""Synthesizer engines: ``dsp`` holds the pure signal functions, engines are thin classes.

- :class:`semcodec.synth.fluid.FluidsynthEngine` — General MIDI soundfont via fluidsynth.
- :class:`semcodec.synth.neural.NeuralEngine` — the torch harmonic-plus-noise synthesizer
  (imported lazily: torch is only loaded when the neural engine is used).
"""
