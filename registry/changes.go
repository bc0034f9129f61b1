package registry

import (
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/changefeed"
)

// ConnectionChange is one connect or disconnect of a device or module.
type ConnectionChange struct {
	DeviceID, ModuleID string
	State              string
	Time               time.Time
}

// connectionChangesKept bounds the feed: a reader further behind reloads.
const connectionChangesKept = 4096

type connectionFeed struct {
	once sync.Once
	feed *changefeed.Feed[ConnectionChange]
}

func (c *connectionFeed) get() *changefeed.Feed[ConnectionChange] {
	c.once.Do(func() { c.feed = changefeed.New[ConnectionChange](connectionChangesKept) })
	return c.feed
}

// ConnectionChanges is the feed of the connection-state changes recorded
// through this Directory (the hub gives the device transports one), for
// live views; it never slows the connections themselves down.
func (d *Directory) ConnectionChanges() *changefeed.Feed[ConnectionChange] { return d.changes.get() }
