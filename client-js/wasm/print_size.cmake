# Prints the size of the freshly built WebAssembly module (cmake -P script;
# called by client-js/CMakeLists.txt with -DWASM=<path>).
file(SIZE "${WASM}" _size)
math(EXPR _kib "(${_size} + 1023) / 1024")
message("wasm: ${WASM}: ${_size} bytes (${_kib} KiB)")
