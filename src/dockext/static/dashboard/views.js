"use strict";
// Docker views (containers, images, volumes) and ddClient.desktopUI.navigate: built on window.dockext.
