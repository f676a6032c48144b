// Schema of the web dashboard, applied as migration 11 (host/store/migrations.cpp lists it):
// indexes and tables the dashboard's queries read (host/ops/ui_store.cpp), and what runners publish
// for it (host/ops/ui_publish.cpp).
#pragma once

namespace jr::ops {

extern const char* const kMigrationV11;

}  // namespace jr::ops
