// Schema of the operations features, applied as migration v5 (host/migrations.cpp lists it):
// jr_enqueue() for enqueueing from SQL in any language, and the webhook outbox.
#pragma once

namespace jr::ops {

extern const char* const kMigrationV5;

}  // namespace jr::ops
