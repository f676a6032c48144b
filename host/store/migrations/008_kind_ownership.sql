-- migration 8: kind ownership: content SHA-256 of the plugin serving each kind
--
-- v8 (trust model, issue 16): which plugin serves each kind is its name (jr_kinds.plugin) and the
-- SHA-256 of its content; a runner with another plugin for a recorded kind refuses that kind
-- (host/engine/kind_owner.cpp). NULL: recorded by a runner before v8 (name only).

ALTER TABLE jr_kinds ADD COLUMN plugin_sha256 text;
