"""Prompt building, output sanitising and draft checks for generated text (no Django).

``prompt`` turns a product and its retrieved context into a ``GenerationRequest``
whose untrusted data sits inside unforgeable boundaries; ``sanitise`` makes a
backend's answer safe to render; ``checks`` lists what a reviewer must look at
before a draft is published. ``unicode`` strips the hidden characters that
every one of them distrusts.
"""
