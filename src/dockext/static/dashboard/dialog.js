"use strict";
// The dashboard file dialog behind ddClient.desktopUI.dialog.showOpenDialog: built on window.dockext.
