-- DocumentVersion as the sender of SendCommand named it ($DEFAULT when it
-- named none), answered as AWS does; document_version keeps the version it
-- resolved to. Commands stored before this answer their resolved version.
ALTER TABLE commands ADD COLUMN requested_document_version TEXT NOT NULL DEFAULT '';
