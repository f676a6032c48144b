// A layer probe (tests/host/layers/CMakeLists.txt): compiled as part of one host layer, it
// includes a header of a layer above. The build must refuse it: the header is not on the
// layer's include path.
#include JR_PROBE_HEADER

int jr_layer_probe();
int jr_layer_probe() { return 0; }
