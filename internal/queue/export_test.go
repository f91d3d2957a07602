package queue

// Test access for the external tests of this package (queue_test), which
// use queuetest and so cannot be in package queue.

// OldLayoutDead is a dead letter as stored under the old layout.
func OldLayoutDead(d Delivery, info DeadInfo) []byte { return encodeDead(&d, &info) }

// OldLayoutParked is a parked delivery as stored under the old layout.
func OldLayoutParked(d Delivery) []byte { return encodeDelivery(&d) }

// OldLayoutAttempts is one batch of an attempt log.
func OldLayoutAttempts(as ...Attempt) []byte {
	entries := make([][]byte, len(as))
	for i := range as {
		entries[i] = encodeAttemptEntry(&as[i])
	}
	return encodeAttemptBatch(entries)
}

// SetMigrateHook runs f after each copy of a migration, before the delete;
// an error stops the migration there.
func SetMigrateHook(f func() error) { migrateHook = f }
