package hub

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The HTTP listeners' timeouts: a client gets this long to send its request
// headers, and an idle keep-alive connection is closed after IdleTimeout.
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpIdleTimeout       = 90 * time.Second
)

// fdReserve is kept free of connections for the database, certificates and
// the process itself when the connection limit comes from the open-file
// limit.
const fdReserve = 256

// raiseOpenFileLimit sets the soft open-file limit to the hard limit and
// returns the soft limit in force. Every connection holds a file
// descriptor, and distributions often set the soft limit to 1,024. Go's
// runtime raises it the same way when the process starts (since Go 1.19);
// doing it here keeps the connection limit from depending on that, and
// works where the runtime's attempt did not happen.
func raiseOpenFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		raised := rl
		raised.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return rl.Cur, err
		}
		rl = raised
	}
	return rl.Cur, nil
}

// defaultMaxConnections derives the connection limit from the open-file
// limit (raised to the hard limit first, raiseOpenFileLimit), so that
// connections alone never exhaust file descriptors: EMFILE would make every
// listener, and the database, fail.
func defaultMaxConnections(openFiles uint64) int {
	if openFiles == 0 || openFiles > 1<<31 {
		return 100000
	}
	return max(int(openFiles)-fdReserve, 64)
}

// connLimit counts open connections across all of the hub's listeners.
type connLimit struct {
	max  int64
	open atomic.Int64
	// refused counts connections closed at once for being over the limit.
	refused atomic.Int64
	log     *slog.Logger
	warned  atomic.Int64 // unix seconds of the last warning
}

func (l *connLimit) acquire() bool {
	if l.open.Add(1) <= l.max {
		return true
	}
	l.open.Add(-1)
	l.refused.Add(1)
	if now := time.Now().Unix(); l.warned.Swap(now) != now {
		l.log.Warn("connection refused: the connection limit is reached (--max-connections)", "limit", l.max)
	}
	return false
}

func (l *connLimit) release() { l.open.Add(-1) }

// limitListener closes connections over the limit as soon as they are
// accepted (instead of leaving them in the backlog, where their clients
// would wait), and releases a slot when an accepted connection closes.
type limitListener struct {
	net.Listener
	limit *connLimit
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.limit.acquire() {
			return &limitedConn{Conn: c, limit: l.limit}, nil
		}
		_ = c.Close()
	}
}

type limitedConn struct {
	net.Conn
	limit *connLimit
	once  sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(c.limit.release)
	return c.Conn.Close()
}

// servedListener records whether an HTTP server stopped serving a listener
// for good (net/http backs off on temporary errors such as EMFILE and only
// returns on others), for the health endpoint.
type servedListener struct {
	name string
	srv  *http.Server
	ln   net.Listener
	dead atomic.Bool
}

// lockDataDir takes an exclusive lock on dir/iothub.lock, so that two
// emulators never serve one data directory with diverging state. The lock
// goes with the process: a crash leaves no stale lock behind.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the data directory: %w", err)
	}
	path := filepath.Join(dir, "iothub.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("the data directory %s is in use by another emulator (it holds %s); stop that one or choose another --data-dir", dir, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}
