/* The layout of the ABI structs as seen by one header version, exported as data so a test can
 * compare versions that cannot share a translation unit. Compiled once per header (current,
 * frozen v1.0, future) with JR_LAYOUT_NAME set to the array's name. */
#include <jobrunner/abi.h>

#include "layout_fields.h"

#define JR_OFF(type, field) offsetof(type, field),
const size_t JR_LAYOUT_NAME[] = {JR_LAYOUT_V1_0_FIELDS(JR_OFF) sizeof(jr_job), sizeof(jr_host_api),
                                 sizeof(jr_kind_desc), sizeof(jr_plugin_desc)};
