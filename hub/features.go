package hub

import (
	"context"
	"fmt"

	"github.com/iothub-emulator/iothub-emulator/blobstorage"
	"github.com/iothub-emulator/iothub-emulator/configurations"
	"github.com/iothub-emulator/iothub-emulator/digitaltwins"
	"github.com/iothub-emulator/iothub-emulator/fileupload"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
)

// newConfigurations builds automatic device management over the twins
// service and the query language; serve starts its evaluation loop.
func (h *Hub) newConfigurations(context.Context) (err error) {
	cfg := h.cfg.Configurations
	if cfg.Now == nil {
		cfg.Now = h.now
	}
	if cfg.Clock == nil {
		cfg.Clock = h.clock
	}
	if cfg.Logger == nil {
		cfg.Logger = h.log.With("component", "configurations")
	}
	h.Configurations, err = configurations.NewService(configurations.Deps{
		Store: &sqlite.ConfigurationStore{DB: h.db}, Targets: sqlite.ConfigurationTargets{DB: h.db}, Twins: h.Twins,
	}, cfg)
	return err
}

// newDigitalTwins serves IoT Plug and Play over the twins service and the
// direct-method invoker.
func (h *Hub) newDigitalTwins(context.Context) (err error) {
	h.DigitalTwins, err = digitaltwins.NewService(digitaltwins.Deps{Twins: h.Twins, Methods: h.Methods}, digitaltwins.Config{})
	return err
}

// newFileUpload builds file upload; without a storage connection string it
// answers as a hub without a storage account does.
func (h *Hub) newFileUpload(context.Context) (err error) {
	deps := fileupload.Deps{Store: &sqlite.FileUploadStore{DB: h.db}}
	if h.cfg.StorageConnectionString != "" {
		account, err := blobstorage.ParseConnectionString(h.cfg.StorageConnectionString)
		if err != nil {
			return fmt.Errorf("--storage-connection-string: %w", err)
		}
		deps.Storage = blobstorage.New(account, nil)
	}
	cfg := h.cfg.FileUpload
	if cfg.Now == nil {
		cfg.Now = h.now
	}
	h.FileUpload, err = fileupload.NewService(deps, cfg)
	return err
}
