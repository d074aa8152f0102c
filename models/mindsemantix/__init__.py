"""MindSemantix, the Python side: simulated subjects, the brain-language model, training, ONNX export, evaluation."""
