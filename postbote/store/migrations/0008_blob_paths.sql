-- postbote store, migration 8: where each blob file lives.
-- New blobs go into one folder per day (DATA/blobs/YYYYMMDD/SHA256), so a
-- group commit fsyncs one folder, not one per message. NULL: the first
-- layout, DATA/blobs/SHA[0:2]/SHA.
ALTER TABLE blobs ADD COLUMN path TEXT;
