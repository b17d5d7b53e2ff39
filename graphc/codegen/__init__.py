"""Code generation: turns fused kernel groups into native code. ``cpu`` emits LLVM IR through
llvmlite (JIT or AOT object); ``cuda`` emits Numba CUDA kernels. Backends are imported on
demand (see ``graphc.config``), never by this package."""
