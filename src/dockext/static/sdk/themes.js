/*
 * dockext: MUI theme options for extensions built with @docker/docker-mui-theme.
 *
 * @docker/docker-mui-theme >= 0.0.12 reads window.__ddMuiV5Themes / window.__ddMuiV6Themes
 * ({light, dark} MUI ThemeOptions) that Docker Desktop injects, and crashes when they are missing.
 * dockext injects the "packagedThemes" fallback that @docker/docker-mui-theme 0.0.11 bundled.
 *
 * Source: npm package @docker/docker-mui-theme@0.0.11, file dist/packagedThemes.js
 *         (sha256 cf118cffd04a3187bc7c22ed954c6a211f86e41054d8d827f96cc5e27600f189)
 * Published by Docker, Inc. under the Apache License, Version 2.0
 * (http://www.apache.org/licenses/LICENSE-2.0); see ../NOTICE-themes.md.
 *
 * Modifications by dockext: the ES-module export was replaced by this wrapper, which assigns the
 * object to both globals. The theme data itself is unchanged.
 */
(function () {
  "use strict";
  // This is a fallback for if the extension is being run inside a version
  // of Docker Desktop that doesn't inject a MUI theme into the extension
  const packagedThemes = {
    dark: {
        palette: {
            text: {
                primary: '#FFFFFF',
                secondary: '#94ABBC',
                disabled: '#7794AB',
            },
            primary: {
                light: '#6BC3F3',
                main: '#007BFF',
                dark: '#096BD4',
            },
            secondary: {
                main: '#E12B0C',
                dark: '#871907',
            },
            action: {
                hover: 'rgba(70, 92, 110, 0.4)',
                hoverOpacity: 0.4,
                selected: 'rgba(70, 92, 110, 0.4)',
                selectedOpacity: 0.3,
                active: '#94ABBC',
                disabled: '#7794AB',
            },
            background: {
                default: '#202C33',
                paper: '#202C33',
            },
            docker: {
                amber: {
                    '100': '#672805',
                    '200': '#7B3606',
                    '300': '#944307',
                    '400': '#AF560A',
                    '500': '#CD6A0A',
                    '600': '#ED8D25',
                    '700': '#F6A650',
                    '800': '#F8B974',
                },
                blue: {
                    '100': '#0B1B46',
                    '200': '#06326D',
                    '300': '#084391',
                    '400': '#1557B8',
                    '500': '#116ED0',
                    '600': '#3391EE',
                    '700': '#55A4F1',
                    '800': '#7CB9F4',
                },
                green: {
                    '100': '#0D342E',
                    '200': '#11423B',
                    '300': '#145348',
                    '400': '#1A655A',
                    '500': '#228375',
                    '600': '#2AA391',
                    '700': '#3CC1AD',
                    '800': '#7ACCC3',
                },
                grey: {
                    '100': '#141B1F',
                    '200': '#27343E',
                    '300': '#364754',
                    '400': '#465C6E',
                    '500': '#7794AB',
                    '600': '#94ABBC',
                    '700': '#ADBECB',
                    '800': '#C4D0DA',
                },
                red: {
                    '100': '#58111B',
                    '200': '#741624',
                    '300': '#951C2F',
                    '400': '#BC233C',
                    '500': '#C32438',
                    '600': '#DD4659',
                    '700': '#E36676',
                    '800': '#EA8E9A',
                },
                violet: {
                    '100': '#341458',
                    '200': '#491D7B',
                    '300': '#5F25A0',
                    '400': '#8032D6',
                    '500': '#8A53EC',
                    '600': '#A371FC',
                    '700': '#B38BFC',
                    '800': '#C5A6FD',
                },
                text: '#FFFFFF',
                background: '#1C262D',
            },
        },
        typography: {
            fontFamily: '"Open SansVariable", "Helvetica Neue", sans-serif',
            fontSize: 12,
            subtitle1: {
                fontSize: 16,
            },
            body1: {
                fontSize: 14,
            },
            subtitle2: {
                fontSize: 22,
                fontWeight: 600,
            },
            fontWeightRegular: 400,
            fontWeightMedium: 500,
            fontWeightBold: 600,
            h1: {
                fontSize: '36px',
                fontWeight: 600,
                letterSpacing: '-1.5%',
                lineHeight: '40px',
            },
            h2: {
                fontSize: '24px',
                fontWeight: 400,
                lineHeight: '32px',
            },
            h3: {
                fontSize: '18px',
                fontWeight: 600,
                lineHeight: '24px',
            },
            'inline-code': {
                fontFamily: 'ui-monospace,Courier,monospace',
                backgroundColor: '#364754',
                padding: '.2em .4em',
                fontSize: '85%',
                borderRadius: '4px',
            },
        },
        breakpoints: {
            values: {
                sm: 640,
                md: 1024,
                lg: 1280,
            },
        },
        components: {
            // @ts-expect-error Doesn't exist in base MUI
            MuiDataGrid: {
                styleOverrides: {
                    root: {
                        border: 'none',
                    },
                    row: {
                        cursor: 'pointer',
                        fontSize: 14,
                        '&:hover': {
                            backgroundColor: '#303E46',
                        },
                    },
                    cell: {
                        borderColor: '#7794AB',
                    },
                    columnHeaders: {
                        textTransform: 'uppercase',
                        borderColor: '#7794AB',
                    },
                    columnSeparator: {
                        color: '#7794AB',
                    },
                },
            },
            MuiDivider: {
                styleOverrides: {
                    root: {
                        borderColor: 'rgba(255, 255, 255, 0.1)',
                    },
                },
            },
            MuiCard: {
                styleOverrides: {
                    root: {
                        borderRadius: '4px !important',
                        borderColor: '#465C6E',
                        backgroundColor: '#27343E',
                        '&:hover': {
                            boxShadow: '0px 2px 8px 4px rgba(0, 0, 0, 0.4)',
                        },
                    },
                },
            },
            MuiCardActions: {
                styleOverrides: {
                    root: {
                        padding: '16px',
                    },
                },
            },
            MuiButton: {
                styleOverrides: {
                    root: {
                        textTransform: 'initial',
                        fontWeight: 600,
                    },
                    contained: {
                        boxShadow: 'none',
                        '&:hover, &:focus': {
                            boxShadow: 'none',
                        },
                        '&.Mui-disabled': {
                            color: 'rgba(255, 255, 255, 0.3)',
                            backgroundColor: 'rgba(255, 255, 255, 0.1)',
                        },
                    },
                    outlined: {
                        color: '#fff',
                    },
                    outlinedPrimary: {
                        border: '1px solid #007BFF',
                    },
                    outlinedSecondary: {
                        border: '1px solid #E12B0C',
                        '&.Mui-disabled': {
                            color: 'rgba(255, 255, 255, 0.3)',
                            borderColor: 'rgba(255, 255, 255, 0.1)',
                        },
                    },
                },
            },
            MuiIconButton: {
                styleOverrides: {
                    root: {
                        transition: 'color 0.3s ease-out',
                        '&:hover': {
                            backgroundColor: 'transparent',
                        },
                    },
                },
            },
            MuiCheckbox: {
                defaultProps: {
                    disableRipple: true,
                },
                styleOverrides: {
                    root: {
                        paddingTop: 4,
                        paddingBottom: 4,
                    },
                    colorPrimary: {
                        '&:hover': {
                            backgroundColor: 'transparent',
                        },
                        '&$checked': {
                            '&:hover': {
                                backgroundColor: 'transparent',
                            },
                        },
                    },
                },
            },
            MuiSwitch: {
                styleOverrides: {
                    colorPrimary: {
                        '&:hover': {
                            backgroundColor: 'transparent',
                        },
                        '&$checked': {
                            '&:hover': {
                                backgroundColor: 'transparent',
                            },
                        },
                    },
                },
            },
            MuiListItem: {
                styleOverrides: {
                    root: {
                        paddingTop: 6,
                        paddingBottom: 6,
                        '&$selected': {
                            backgroundColor: 'rgba(107, 195, 243, 0.2)',
                        },
                    },
                    button: {
                        '&:hover': {
                            backgroundColor: 'rgba(107, 195, 243, 0.1)',
                        },
                    },
                },
            },
            MuiTooltip: {
                styleOverrides: {
                    tooltip: {
                        fontSize: '10px',
                        lineHeight: '13px',
                        letterSpacing: '1px',
                        textTransform: 'uppercase',
                        color: 'white',
                        backgroundColor: '#5C6972',
                    },
                },
            },
            MuiListItemIcon: {
                styleOverrides: {
                    root: {
                        minWidth: 36,
                    },
                },
            },
            MuiMenu: {
                styleOverrides: {
                    paper: {
                        background: '#303E46',
                        boxShadow: 'none',
                    },
                },
            },
            MuiMenuItem: {
                styleOverrides: {
                    root: {
                        minHeight: 'auto',
                        '&:focus': {
                            '& .MuiListItemIcon-root, & .MuiListItemText-primary': {
                                color: '#ffffff',
                            },
                        },
                    },
                    gutters: {
                        fontSize: 14,
                    },
                },
            },
            MuiRadio: {
                styleOverrides: {
                    root: {
                        paddingTop: 4,
                        paddingBottom: 4,
                    },
                },
            },
            MuiFilledInput: {
                styleOverrides: {
                    root: {
                        borderRadius: '0 !important',
                        backgroundColor: 'rgba(255, 255, 255, 0.09)',
                        '&:focus, &:hover': {
                            backgroundColor: 'rgba(255, 255, 255, 0.13)',
                        },
                    },
                    underline: {
                        '&:after': {
                            borderBottomColor: '#007BFF',
                        },
                    },
                },
            },
            MuiOutlinedInput: {
                styleOverrides: {
                    notchedOutline: {
                        borderColor: '#555D61 !important',
                        borderWidth: '1px !important',
                    },
                    root: {
                        '&$disabled': {
                            backgroundColor: '#2C373E',
                            borderRadius: '4px',
                        },
                    },
                },
            },
            MuiPaper: {
                styleOverrides: {
                    root: {
                        borderRadius: '0 !important',
                    },
                },
            },
            MuiList: {
                styleOverrides: {
                    root: {
                        paddingTop: '0 !important',
                        paddingBottom: '0 !important',
                    },
                },
            },
            MuiTableRow: {
                styleOverrides: {
                    hover: {
                        backgroundColor: 'transparent !important',
                    },
                },
            },
            MuiDialog: {
                styleOverrides: {
                    paperScrollPaper: {},
                },
            },
            MuiDialogActions: {
                styleOverrides: {
                    root: {
                        padding: '16px',
                    },
                },
            },
            MuiButtonBase: {
                defaultProps: {
                    disableRipple: true,
                },
            },
            MuiTab: {
                styleOverrides: {
                    root: {
                        textTransform: 'none',
                        fontSize: 14,
                    },
                },
            },
            MuiCssBaseline: {
                styleOverrides: {
                    body: {
                        padding: '16px 32px',
                        overflow: 'overlay',
                    },
                    '&::-webkit-scrollbar': {
                        width: '0.286rem',
                        height: '0.286rem',
                    },
                    '&::-webkit-scrollbar-track': {
                        visibility: 'hidden',
                        borderRadius: '1.714rem',
                        backgroundColor: 'rgba(0, 0, 0, 0.05)',
                    },
                    '&::-webkit-scrollbar-thumb': {
                        visibility: 'hidden',
                        backgroundColor: '#465C6E',
                        borderRadius: '1.714rem',
                    },
                    '&::-webkit-scrollbar-corner': {
                        backgroundColor: 'transparent',
                    },
                    '&:hover::-webkit-scrollbar-thumb': {
                        visibility: 'visible',
                    },
                    '&:hover::-webkit-scrollbar-track': {
                        visibility: 'visible',
                    },
                },
            },
        },
    },
    light: {
        palette: {
            text: {
                primary: '#27343B',
                secondary: '#505968',
                disabled: '#677285',
            },
            primary: {
                light: '#6BC3F3',
                main: '#007BFF',
                dark: '#096BD4',
            },
            secondary: {
                main: '#E12B0C',
                dark: '#871907',
            },
            action: {
                hover: 'rgba(137, 147, 165, 0.4)',
                hoverOpacity: 0.4,
                selected: 'rgba(137, 147, 165, 0.4)',
                selectedOpacity: 0.3,
                active: '#505968',
                disabled: '#677285',
            },
            background: {
                default: '#F4F4F6',
                paper: '#F4F4F6',
            },
            docker: {
                amber: {
                    '100': '#FFF6E2',
                    '200': '#FCE1A9',
                    '300': '#FBB552',
                    '400': '#DD7805',
                    '500': '#B85504',
                    '600': '#AA4409',
                    '700': '#893607',
                    '800': '#421A02',
                },
                blue: {
                    '100': '#E8F4FD',
                    '200': '#C0E0FA',
                    '300': '#8BC7F5',
                    '400': '#1C90ED',
                    '500': '#116ED0',
                    '600': '#0055BD',
                    '700': '#1144A6',
                    '800': '#00084D',
                },
                green: {
                    '100': '#F3FAF9',
                    '200': '#C6EAE1',
                    '300': '#88D5C0',
                    '400': '#3BA08D',
                    '500': '#2E7F74',
                    '600': '#1E6C5F',
                    '700': '#185A51',
                    '800': '#0C2C28',
                },
                grey: {
                    '100': '#EAEAED',
                    '200': '#E1E2E6',
                    '300': '#C4C8D1',
                    '400': '#8993A5',
                    '500': '#677285',
                    '600': '#505968',
                    '700': '#393F49',
                    '800': '#17191E',
                },
                red: {
                    '100': '#FEEFEF',
                    '200': '#F6CFD0',
                    '300': '#EEA3A5',
                    '400': '#E25D68',
                    '500': '#D52536',
                    '600': '#B72132',
                    '700': '#8B1924',
                    '800': '#350A10',
                },
                violet: {
                    '100': '#F7ECFF',
                    '200': '#E9D4FF',
                    '300': '#C9A6FF',
                    '400': '#9860FF',
                    '500': '#7D2EFF',
                    '600': '#6D00EB',
                    '700': '#5700BB',
                    '800': '#220041',
                },
                text: '#27343B',
                background: '#F9F9FA',
            },
        },
        typography: {
            fontFamily: '"Open SansVariable", "Helvetica Neue", sans-serif',
            fontSize: 12,
            subtitle1: {
                fontSize: 16,
            },
            body1: {
                fontSize: 14,
            },
            subtitle2: {
                fontSize: 22,
                fontWeight: 600,
            },
            fontWeightRegular: 400,
            fontWeightMedium: 500,
            fontWeightBold: 600,
            h1: {
                fontSize: '36px',
                fontWeight: 600,
                letterSpacing: '-1.5%',
                lineHeight: '40px',
            },
            h2: {
                fontSize: '24px',
                fontWeight: 400,
                lineHeight: '32px',
            },
            h3: {
                fontSize: '18px',
                fontWeight: 600,
                lineHeight: '24px',
            },
            'inline-code': {
                fontFamily: 'ui-monospace,Courier,monospace',
                backgroundColor: '#E1E2E6',
                padding: '.2em .4em',
                fontSize: '85%',
                borderRadius: '4px',
            },
        },
        breakpoints: {
            values: {
                sm: 640,
                md: 1024,
                lg: 1280,
            },
        },
        components: {
            MuiDataGrid: {
                styleOverrides: {
                    root: {
                        border: 'none',
                    },
                    row: {
                        cursor: 'pointer',
                        fontSize: 14,
                        '&:hover': {
                            backgroundColor: '#FAFAFB',
                        },
                    },
                    cell: {
                        borderColor: '#C4C8D1',
                    },
                    columnHeaders: {
                        textTransform: 'uppercase',
                        borderColor: '#C4C8D1',
                    },
                    columnSeparator: {
                        color: '#C4C8D1',
                    },
                },
            },
            MuiDivider: {
                styleOverrides: {
                    root: {
                        borderColor: 'rgba(15, 22, 30, 0.1)',
                    },
                },
            },
            MuiCard: {
                styleOverrides: {
                    root: {
                        borderRadius: '4px !important',
                        borderColor: '#EAEAED',
                        backgroundColor: '#ffffff',
                        '&:hover': {
                            boxShadow: '0px 2px 8px 4px rgba(0, 0, 0, 0.1)',
                        },
                    },
                },
            },
            MuiCardActions: {
                styleOverrides: {
                    root: {
                        padding: '16px',
                    },
                },
            },
            MuiButton: {
                styleOverrides: {
                    root: {
                        textTransform: 'initial',
                        fontWeight: 600,
                    },
                    contained: {
                        boxShadow: 'none',
                        '&:hover, &:focus': {
                            boxShadow: 'none',
                        },
                        '&.Mui-disabled': {
                            color: 'rgba(15, 22, 30, 0.3)',
                            backgroundColor: 'rgba(15, 22, 30, 0.1)',
                        },
                    },
                    outlined: {},
                    outlinedPrimary: {
                        border: '1px solid #007BFF',
                    },
                    outlinedSecondary: {
                        border: '1px solid #E12B0C',
                        '&.Mui-disabled': {
                            color: 'rgba(15, 22, 30, 0.3)',
                            borderColor: 'rgba(15, 22, 30, 0.1)',
                        },
                    },
                },
            },
            MuiIconButton: {
                styleOverrides: {
                    root: {
                        transition: 'color 0.3s ease-out',
                        '&:hover': {
                            backgroundColor: 'transparent',
                        },
                    },
                },
            },
            MuiCheckbox: {
                defaultProps: {
                    disableRipple: true,
                },
                styleOverrides: {
                    root: {
                        paddingTop: 4,
                        paddingBottom: 4,
                    },
                    colorPrimary: {
                        '&:hover': {
                            backgroundColor: 'transparent',
                        },
                        '&$checked': {
                            '&:hover': {
                                backgroundColor: 'transparent',
                            },
                        },
                    },
                },
            },
            MuiSwitch: {
                styleOverrides: {
                    colorPrimary: {
                        '&:hover': {
                            backgroundColor: 'transparent',
                        },
                        '&$checked': {
                            '&:hover': {
                                backgroundColor: 'transparent',
                            },
                        },
                    },
                },
            },
            MuiListItem: {
                styleOverrides: {
                    root: {
                        paddingTop: 6,
                        paddingBottom: 6,
                        '&$selected': {
                            backgroundColor: 'rgba(107, 195, 243, 0.2)',
                        },
                    },
                    button: {
                        '&:hover': {
                            backgroundColor: 'rgba(107, 195, 243, 0.1)',
                        },
                    },
                },
            },
            MuiTooltip: {
                styleOverrides: {
                    tooltip: {
                        fontSize: '10px',
                        lineHeight: '13px',
                        letterSpacing: '1px',
                        textTransform: 'uppercase',
                        color: 'white',
                        backgroundColor: '#2F3B43',
                    },
                },
            },
            MuiListItemIcon: {
                styleOverrides: {
                    root: {
                        minWidth: 36,
                    },
                },
            },
            MuiMenu: {
                styleOverrides: {
                    paper: {
                        background: '#FAFAFB',
                        boxShadow: 'none',
                    },
                },
            },
            MuiMenuItem: {
                styleOverrides: {
                    root: {
                        minHeight: 'auto',
                        '&:focus': {
                            '& .MuiListItemIcon-root, & .MuiListItemText-primary': {
                                color: '#0F161E',
                            },
                        },
                    },
                    gutters: {
                        fontSize: 14,
                    },
                },
            },
            MuiRadio: {
                styleOverrides: {
                    root: {
                        paddingTop: 4,
                        paddingBottom: 4,
                    },
                },
            },
            MuiFilledInput: {
                styleOverrides: {
                    root: {
                        borderRadius: '0 !important',
                        backgroundColor: '#ECECEC',
                        '&:focus, &:hover': {
                            backgroundColor: '#E4E4E4',
                        },
                    },
                    underline: {
                        '&:after': {
                            borderBottomColor: '#007BFF',
                        },
                    },
                },
            },
            MuiOutlinedInput: {
                styleOverrides: {
                    notchedOutline: {
                        borderColor: 'rgba(0, 0, 0, 0.23) !important',
                        borderWidth: '1px !important',
                    },
                    root: {
                        '&$disabled': {
                            backgroundColor: '#EFEFEF',
                            borderRadius: '4px',
                        },
                    },
                },
            },
            MuiPaper: {
                styleOverrides: {
                    root: {
                        borderRadius: '0 !important',
                    },
                },
            },
            MuiList: {
                styleOverrides: {
                    root: {
                        paddingTop: '0 !important',
                        paddingBottom: '0 !important',
                    },
                },
            },
            MuiTableRow: {
                styleOverrides: {
                    hover: {
                        backgroundColor: 'transparent !important',
                    },
                },
            },
            MuiDialog: {
                styleOverrides: {
                    paperScrollPaper: {
                        backgroundColor: '#ffffff',
                    },
                },
            },
            MuiDialogActions: {
                styleOverrides: {
                    root: {
                        padding: '16px',
                    },
                },
            },
            MuiButtonBase: {
                defaultProps: {
                    disableRipple: true,
                },
            },
            MuiTab: {
                styleOverrides: {
                    root: {
                        textTransform: 'none',
                        fontSize: 14,
                    },
                },
            },
            MuiCssBaseline: {
                styleOverrides: {
                    body: {
                        padding: '16px 32px',
                        overflow: 'overlay',
                    },
                    '&::-webkit-scrollbar': {
                        width: '0.286rem',
                        height: '0.286rem',
                    },
                    '&::-webkit-scrollbar-track': {
                        visibility: 'hidden',
                        borderRadius: '1.714rem',
                        backgroundColor: 'rgba(255, 255, 255, 0.1)',
                    },
                    '&::-webkit-scrollbar-thumb': {
                        visibility: 'hidden',
                        backgroundColor: '#8993A5',
                        borderRadius: '1.714rem',
                    },
                    '&::-webkit-scrollbar-corner': {
                        backgroundColor: 'transparent',
                    },
                    '&:hover::-webkit-scrollbar-thumb': {
                        visibility: 'visible',
                    },
                    '&:hover::-webkit-scrollbar-track': {
                        visibility: 'visible',
                    },
                },
            },
        },
    },
  };
  // One ThemeOptions bag serves both DockerMuiV5ThemeProvider and DockerMuiV6ThemeProvider.
  window.__ddMuiV5Themes = packagedThemes;
  window.__ddMuiV6Themes = packagedThemes;
})();
