module github.com/iothub-emulator/iothub-emulator/e2e/sdk/go

go 1.22

require (
	github.com/Azure/go-amqp v0.18.1
	github.com/amenzhinsky/iothub v0.9.1
	github.com/eclipse/paho.mqtt.golang v1.3.5
)

require (
	github.com/gorilla/websocket v1.4.2 // indirect
	golang.org/x/net v0.7.0 // indirect
)
