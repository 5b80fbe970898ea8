"""The chunk encoder under ONNX Runtime: export, graph optimisation, int8 quantisation, and the session that
stands in for the torch encoder when a Bento serves with ``serving.runtime: onnx``.

Only the encoder moves: it is nearly all of a chunked classifier's cost (22M parameters against a head of a few
thousand), and the heads (pooling, attention, biLSTM, small transformer) keep running in torch on its vectors,
so every variant is served by the same code it was evaluated with.
"""
