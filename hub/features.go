package hub

import (
	"fmt"

	"github.com/iothub-emulator/iothub-emulator/blobstorage"
	"github.com/iothub-emulator/iothub-emulator/configurations"
	"github.com/iothub-emulator/iothub-emulator/digitaltwins"
	"github.com/iothub-emulator/iothub-emulator/fileupload"
	"github.com/iothub-emulator/iothub-emulator/httpapi"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
)

// openConfigurations builds automatic device management over the twins
// service and serves its routes; Open starts its loop with the listeners.
func (h *Hub) openConfigurations(api *httpapi.Server) {
	h.Configurations = configurations.NewService(configurations.Deps{
		Store: &sqlite.ConfigurationStore{DB: h.db}, Targets: sqlite.ConfigurationTargets{DB: h.db},
		Twins: h.Twins, Log: h.log.With("component", "configurations"),
	}, h.cfg.Configurations)
	api.AddConfigurationRoutes(h.Configurations)
}

// openDigitalTwins serves IoT Plug and Play over the twins service and the
// direct-method invoker (h.wire builds the invoker first).
func (h *Hub) openDigitalTwins(api *httpapi.Server) {
	h.DigitalTwins = digitaltwins.NewService(digitaltwins.Deps{Twins: h.Twins, Methods: h.Methods}, digitaltwins.Config{})
	api.AddDigitalTwinRoutes(h.DigitalTwins)
}

// openFileUpload serves device file upload; without a storage connection
// string the routes answer as a hub without a storage account does.
func (h *Hub) openFileUpload(api *httpapi.Server) error {
	var storage fileupload.Storage
	if h.cfg.StorageConnectionString != "" {
		account, err := blobstorage.ParseConnectionString(h.cfg.StorageConnectionString)
		if err != nil {
			return fmt.Errorf("--storage-connection-string: %w", err)
		}
		storage = blobstorage.New(account, nil)
	}
	h.FileUpload = fileupload.NewService(fileupload.Deps{Storage: storage, Store: &sqlite.FileUploadStore{DB: h.db}}, h.cfg.FileUpload)
	api.AddFileUploadRoutes(h.FileUpload)
	return nil
}
