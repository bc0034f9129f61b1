package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/iothub-emulator/iothub-emulator/fileupload"
	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// FileUploadStore keeps pending file uploads and file notifications.
type FileUploadStore struct{ DB *DB }

var _ fileupload.Store = (*FileUploadStore)(nil)

func (s *FileUploadStore) AddUpload(ctx context.Context, u fileupload.Upload, max int, now time.Time) error {
	return s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM file_uploads WHERE expiry_time <= ?`, formatTime(now)); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM file_uploads WHERE device_id = ?`, u.DeviceID).Scan(&n); err != nil {
			return err
		}
		if max > 0 && n >= max {
			return iothub.Errorf(iothub.IotHubQuotaExceeded, "Device '%s' already has %d file uploads in progress, the maximum.", u.DeviceID, max)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO file_uploads (correlation_id, device_id, container, blob_name, created_time, expiry_time)
			VALUES (?, ?, ?, ?, ?, ?)`, u.CorrelationID, u.DeviceID, u.Container, u.BlobName, formatTime(u.Created), formatTime(u.Expires))
		return err
	})
}

func (s *FileUploadStore) TakeUpload(ctx context.Context, deviceID, correlationID string) (*fileupload.Upload, error) {
	var u fileupload.Upload
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		var created, expires string
		err := tx.QueryRowContext(ctx, `DELETE FROM file_uploads WHERE correlation_id = ? AND device_id = ?
			RETURNING correlation_id, device_id, container, blob_name, created_time, expiry_time`, correlationID, deviceID).
			Scan(&u.CorrelationID, &u.DeviceID, &u.Container, &u.BlobName, &created, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return iothub.Errorf(iothub.ArgumentInvalid, "No file upload with correlation id '%s' is in progress for device '%s'.", correlationID, deviceID)
		}
		u.Created, u.Expires = parseTime(created), parseTime(expires)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &u, nil
}

func (s *FileUploadStore) AddNotification(ctx context.Context, n *fileupload.Notification, keep int, notBefore time.Time) error {
	return s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO file_notifications (device_id, blob_uri, blob_name, last_updated_time, blob_size, enqueued_time)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING seq`, n.DeviceID, n.BlobURI, n.BlobName, formatTime(n.LastUpdatedTime), n.BlobSizeInBytes,
			formatTime(n.EnqueuedTime)).Scan(&n.Seq)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM file_notifications WHERE seq <= ? OR enqueued_time < ?`, n.Seq-int64(keep), formatTime(notBefore))
		return err
	})
}

func (s *FileUploadStore) Notifications(ctx context.Context, deviceID string, after int64, limit int) ([]fileupload.Notification, error) {
	q := `SELECT seq, device_id, blob_uri, blob_name, last_updated_time, blob_size, enqueued_time FROM file_notifications WHERE seq > ?`
	args := []any{after}
	if deviceID != "" {
		q += ` AND device_id = ?`
		args = append(args, deviceID)
	}
	rows, err := s.DB.Reader().QueryContext(ctx, q+` ORDER BY seq LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []fileupload.Notification
	for rows.Next() {
		var n fileupload.Notification
		var upd, enq string
		if err := rows.Scan(&n.Seq, &n.DeviceID, &n.BlobURI, &n.BlobName, &upd, &n.BlobSizeInBytes, &enq); err != nil {
			return nil, err
		}
		n.LastUpdatedTime, n.EnqueuedTime = parseTime(upd), parseTime(enq)
		out = append(out, n)
	}
	return out, rows.Err()
}
